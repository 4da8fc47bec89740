"""Reading and querying BIDS datasets (nothing here writes).

* :mod:`~spec2vol_bids.bids.runs` - index a dataset with PyBIDS and pair each EEG run with its BOLD run;
* :mod:`~spec2vol_bids.bids.filters` - participant/session/task labels and ``--bids-filter-file`` queries;
* :mod:`~spec2vol_bids.bids.fmriprep` - preprocessed BOLD from a derivatives dataset (``-d``, ``--bold-space``);
* :mod:`~spec2vol_bids.bids.bold` - the BOLD header check and repetition time;
* :mod:`~spec2vol_bids.bids.eeg` - EEG recordings and their volume onsets;
* :mod:`~spec2vol_bids.bids.validate` - the BIDS validator.
"""
