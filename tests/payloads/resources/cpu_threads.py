import threading
def spin():
    while True:
        pass
for i in range(8):
    threading.Thread(target=spin, daemon=True).start()
spin()
