"""HTTP plumbing shared by every protocol: error rendering, request ids, streaming."""
