"""spec2vol-bids test suite (a package, so test folders such as tests/bids never shadow installed packages)."""
