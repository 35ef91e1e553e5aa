greet() { echo "hello, $1"; }
selftest() { [ "$(greet x)" = "hello, x" ] && echo ok; }
