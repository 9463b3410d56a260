-- Rows of the view `condition` for the latest version of each resource, deletes removed.
{{ latest_view_rows('condition') }}
