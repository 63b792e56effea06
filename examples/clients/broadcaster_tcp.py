import asyncio
from broadcaster import Broadcast

broadcast = Broadcast("redis://:password@127.0.0.1:6380")   # the relay's RELAY_TCP_ADDR and RELAY_PASSWORD


async def main():
    await broadcast.connect()
    # broadcaster 0.3.1 never listens to the first subscription of a Broadcast (with redis-server too):
    # hold one for its lifetime, then subscribe as usual
    async with broadcast.subscribe(channel="startup"):
        async with broadcast.subscribe(channel="news") as subscriber:
            await broadcast.publish(channel="news", message="hello")
            event = await asyncio.wait_for(subscriber.get(), 5)
            print(event.channel, event.message)
    await broadcast.disconnect()

asyncio.run(main())
