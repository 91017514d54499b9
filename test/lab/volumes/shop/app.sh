#!/bin/sh
# The shop app (seed 000's Sinatra app, as a shell loop): every 2 s, read
# the greeting from the shop database and write the page nginx serves.
# A database that does not answer leaves the last page in place.
set -u
while :; do
	row=$(mariadb -h "$DB_HOST" -u "$DB_USER" -p"$DB_PASSWORD" -N -B shop \
		-e 'SELECT text FROM greetings WHERE id = 1' 2>/tmp/shop-app.err)
	if [ -n "$row" ]; then
		printf '<h1>%s</h1>\n<p>built by %s from a row of %s</p>\n' "$row" "$(hostname)" "$DB_HOST" \
			> /run/shop/index.html.new && mv /run/shop/index.html.new /run/shop/index.html
	fi
	sleep 2
done
