case "${1:-}" in
greet) greet "${2:-you}" ;;
selftest) selftest ;;
*) echo "usage: app greet NAME | selftest" >&2; exit 2 ;;
esac
