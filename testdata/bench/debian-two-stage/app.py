import subprocess

print(subprocess.run(["/usr/local/bin/hello"], capture_output=True, text=True).stdout, end="")
