import redis

r = redis.Redis(unix_socket_path="/run/pubsub-relay/relay.sock", protocol=3)   # RESP3 (redis-py >= 5)
p = r.pubsub()
p.subscribe("news")
print(p.get_message(timeout=5))
r.publish("news", "hello")
print(p.get_message(timeout=5))
p.close()
r.close()
