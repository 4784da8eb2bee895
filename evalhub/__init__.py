"""liftlab evalhub: score subject-lifting releases against datasets in the catalog.

This first version reads the catalog (``evalhub datasets``); scoring arrives with its own issue.
"""
