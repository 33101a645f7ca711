"""latplan.store"""
