"""spec2vol_bids.bids"""
