"""Figures and HTML reports (matplotlib and pandas are imported lazily, inside the functions).

* :mod:`spec2vol_bids.reports.figures`: alignment, spectrogram, target BOLD, prediction and group figures.
* :mod:`spec2vol_bids.reports.participant`: ``sub-<label>.html`` (:class:`~.participant.RunReport`,
  :func:`~.participant.participant_report`).
* :mod:`spec2vol_bids.reports.group`: ``group.html`` from ``group_metrics.tsv`` (:func:`~.group.group_report`).
* :mod:`spec2vol_bids.reports.methods`: the citable methods paragraph generated from the settings.
"""
