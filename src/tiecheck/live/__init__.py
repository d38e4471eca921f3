"""Checks on tensors in memory: a state dict before it is saved, a live model before it is pushed.

``scan_state_dict`` and ``inspect_model`` are re-exported from :mod:`tiecheck`; this package imports
neither torch nor numpy itself: it works on the objects the caller already has.
"""
