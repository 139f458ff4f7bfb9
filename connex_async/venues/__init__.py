"""One package per venue: ``models`` (schemas), ``api`` (wire knowledge), ``client``."""
