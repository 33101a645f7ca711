"""latplan.phantom"""
