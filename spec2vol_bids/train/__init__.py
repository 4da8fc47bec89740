"""spec2vol_bids.train"""
