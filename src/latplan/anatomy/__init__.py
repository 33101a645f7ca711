"""latplan.anatomy"""
