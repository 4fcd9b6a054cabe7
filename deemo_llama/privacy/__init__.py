"""The privacy boundary: face anonymisation, McAdams voice anonymisation, audits and evaluation.

Everything here runs on raw media; only de-identified media and non-identifying figures leave it.
"""
