"""latplan.web"""
