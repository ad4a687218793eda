// Entry point: `/operator` is the operator view, everything else the user's web device.
import { startOperator } from './operator';
import { startUser } from './user';

const root = document.getElementById('app')!;
if (location.pathname.replace(/\/+$/, '') === '/operator') startOperator(root);
else startUser(root);
