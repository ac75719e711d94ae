"""torch.fx plumbing shared by every pass: tracing, finding sites/blocks/heads, editing. No policy."""
