-- Rows of the view `encounter` for the latest version of each resource, deletes removed.
{{ latest_view_rows('encounter') }}
