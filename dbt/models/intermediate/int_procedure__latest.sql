-- Rows of the view `procedure` for the latest version of each resource, deletes removed.
{{ latest_view_rows('procedure') }}
