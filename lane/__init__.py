"""The guest lane: build a kernel with the mtty sample driver, boot it, run the suite inside."""
