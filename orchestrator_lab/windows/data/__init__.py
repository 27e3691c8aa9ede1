"""Data of the Windows stand-in (scenario baseline and indicators, canned command output templates).

A package only so that setuptools' package-data globs ship these files with the wheel.
"""
