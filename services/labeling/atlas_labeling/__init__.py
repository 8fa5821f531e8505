"""The labeling service: projects with typed label schemas, items, leased assignments with
overlap, review, gold items, and labeling jobs (import, pre-label, export)."""
