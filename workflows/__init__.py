"""Glue over the libraries (translate, models, datasets): train → export → evaluate, as the entry points run it."""
