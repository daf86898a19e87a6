"""Contract suites: the behaviour every store and launcher owes the study, as pytest classes.

As Optuna ships its storage tests (``optuna/testing/``), kubetune ships these
so that a store or launcher of your own is held to the same contract as the
built-in ones: subclass the suite in your tests and provide the fixtures its
docstring names. kubetune's own tests run them against every implementation
(tests/test_store.py, tests/test_launcher.py, tests/cluster/). Needs pytest,
which kubetune itself does not.
"""
