"""The portal's pages: one module per role (sign-in, firms, reviewers and supervisors)."""
