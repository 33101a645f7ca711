"""latplan.followup"""
