"""The controller side: what the controller image runs. Never imports TensorFlow.

The GP loop (:mod:`.study`) asks the optimizer (:mod:`.optimizer`) for a
point, launches a trial (``kubetune.launcher``), reads its record back
(:mod:`.history`), and publishes the views (:mod:`.report`, :mod:`.plots`)
and what users watch (:mod:`.observer`, :mod:`.progress`).
"""
