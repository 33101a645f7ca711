"""latplan.physics"""
