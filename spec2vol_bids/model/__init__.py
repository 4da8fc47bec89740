"""spec2vol_bids.model"""
