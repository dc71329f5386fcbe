"""The Cube API over HTTP: requests, responses, pages and paging."""
