"""latplan.modalities"""
