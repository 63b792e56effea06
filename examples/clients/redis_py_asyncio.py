import asyncio
import redis.asyncio as redis


async def main():
    r = redis.Redis.from_url("unix:///run/pubsub-relay/relay.sock")
    async with r.pubsub() as p:
        await p.subscribe("news")
        print(await p.get_message(timeout=5))   # the confirmation
        await r.publish("news", "hello")
        print(await p.get_message(timeout=5))
    await r.aclose()

asyncio.run(main())
