-- Rows of the view `medication_request` for the latest version of each resource, deletes removed.
{{ latest_view_rows('medication_request') }}
