"""spec2vol_bids.simulate"""
