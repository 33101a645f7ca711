"""latplan.board"""
