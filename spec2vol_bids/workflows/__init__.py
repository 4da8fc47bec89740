"""spec2vol_bids.workflows"""
