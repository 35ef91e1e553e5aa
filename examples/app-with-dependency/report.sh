#!/bin/sh
# The app: prints the inventory as a table using the csvtable dependency.
set -eu
echo "Inventory report ($(wc -l < /app/inventory.csv) lines)"
csvtable /app/inventory.csv
