"""spec2vol_bids.reports"""
