"""Multi-task fusion (UnifiedRL, arXiv 2404.17589): the fusion env, behaviour policies, logs and evaluation."""
