"""latplan.batch"""
