"""How a shadow answer is compared with production: diffs, noise rules, endpoint templates."""
