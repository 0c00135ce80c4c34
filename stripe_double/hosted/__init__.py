"""Pages the double serves to a browser: the hosted checkout and the 3-D Secure page."""
