"""spec2vol_bids.interfaces"""
