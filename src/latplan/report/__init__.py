"""latplan.report"""
