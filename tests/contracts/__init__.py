"""Contract suites: one test class per interface, subclassed once per implementation.

Like Optuna's StorageTestCase: the behaviour every implementation owes its
callers is written once, and each implementation's test module only says how
to make one.
"""
