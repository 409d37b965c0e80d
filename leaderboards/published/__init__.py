"""The source documents' comparison tables as CSVs: package data, so an installed vitbench
(not only a source checkout) can render them."""
