"""spec2vol_bids.preproc"""
