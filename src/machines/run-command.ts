/** ipam-da-consul's commands: each runs its machine, loaded only when that command is run. */
import type { AnyStateMachine } from 'xstate';
import type { CniEnvironment } from '../cni/environment';
import { CniError, ErrorCode } from '../cni/errors';
import type { CommandRunner, PluginOutcome } from '../cni/plugin';
import type { Log } from '../services/logger';

/** Runs the command's machine to its final state, logging each state at debug level. */
export const runCommandMachine: CommandRunner = async (env: CniEnvironment, stdin: string, log: Log): Promise<PluginOutcome> => {
  const machine = await machineFor(env.command);
  const { createActor, toPromise } = await import('xstate');
  const actor = createActor(machine, { input: { env, stdin, log } });
  actor.subscribe({
    next: (snapshot) => log.debug(`${machine.id}: ${JSON.stringify(snapshot.value)}`),
    error: () => undefined, // toPromise below reports it
  });
  actor.start();
  return (await toPromise(actor)) as PluginOutcome;
};

async function machineFor(command: CniEnvironment['command']): Promise<AnyStateMachine> {
  switch (command) {
    case 'ADD':
      return (await import('./add-command.machine')).addCommandMachine;
    case 'DEL':
      return (await import('./del-command.machine')).delCommandMachine;
    case 'CHECK':
      return (await import('./check-command.machine')).checkCommandMachine;
    case 'GC':
      return (await import('./gc-command.machine')).gcCommandMachine;
    case 'STATUS':
      return (await import('./status-command.machine')).statusCommandMachine;
    case 'VERSION':
      throw new CniError(ErrorCode.Unexpected, 'VERSION has no machine');
  }
}
