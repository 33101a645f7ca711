"""latplan.knowledge"""
