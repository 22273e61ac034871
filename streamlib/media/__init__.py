"""Pure media math with no actor in it: SMPTE levels, the 8-bit blend rule, colour conversion.
"""
