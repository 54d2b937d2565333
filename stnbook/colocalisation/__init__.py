"""Co-localisation (paper A.2): the experiment and its chapter's report."""
